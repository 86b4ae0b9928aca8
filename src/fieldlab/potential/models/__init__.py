"""Operator backbones (UNet, FNO) behind one wrapper with a shared geometry encoder and spacing conditioning."""
