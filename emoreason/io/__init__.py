"""Media input: video frames sampled by time (decord), still images, and audio at 16 kHz."""
