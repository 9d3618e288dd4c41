"""Model builders (timm classifiers; detectors come with the detection path) and safe weight loading."""
