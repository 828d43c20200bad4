"""Non-facial cues measured from a clip (voice prosody), as numbers and short text the reasoner can cite."""
