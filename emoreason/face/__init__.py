"""Face perception: detection, landmarks, tracking, alignment and AU evidence."""
