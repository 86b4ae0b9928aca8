"""Learnable models: operator backbones (UNet, FNO) behind one wrapper, and INRs (SIREN, hash grid)."""
