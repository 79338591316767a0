"""Training: optimizer and learning-rate schedule, the train loop, exports."""
