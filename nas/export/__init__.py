"""What leaves nas: the standalone model.py source and the self-contained ONNX file."""
