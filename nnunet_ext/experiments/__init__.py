"""End-to-end runs through nnU-Net's own commands: the topology study."""
