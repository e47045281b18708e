"""What a run leaves to read: learning curves, classification reports, confusion matrices, sample sheets,
segmentation and detection figures, TensorBoard events. matplotlib is imported only when a figure is drawn."""
