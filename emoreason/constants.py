"""Shared constants: sample rates, analysis defaults, special tokens and answer tags.

Every module imports these from here so that a value is defined exactly once.
"""

# Audio is resampled to this rate everywhere (Whisper-style encoders expect 16 kHz).
AUDIO_SAMPLE_RATE = 16_000
# The audio a model hears: the first this many seconds of a clip (Whisper's window); prosody reads all of it.
MODEL_AUDIO_S = 30.0

# Default number of frames analysed per second of video. AU onsets last ~0.1-0.5 s, so 8 fps
# resolves onset/apex/offset while keeping per-clip cost low on a CPU.
DEFAULT_ANALYSIS_FPS = 8.0
# Hard cap on analysed frames per clip; longer clips are sampled more sparsely.
DEFAULT_MAX_FRAMES = 480
# Frames are decoded at most this size on their long side before face detection.
DEFAULT_MAX_SIDE = 640
# Still images are read at most this size on their long side (faces in photos are often small).
IMAGE_MAX_SIDE = 2560
# Larger images are refused before decoding (PIL's decompression-bomb limit is 89 MP; 100 MP keeps 10000x10000).
IMAGE_MAX_PIXELS = 100_000_000
# Aligned main-face crops the model takes per clip (a checkpoint's ``max_frames`` overrides it), and their size.
DEFAULT_MODEL_CROPS = 16
CROP_SIZE = 224
# The visual report's key frames: at most this many, kept at most this size.
MAX_KEY_FRAMES = 8
KEY_FRAME_SIDE = 360

# The ways to turn evidence into a report (emoreason.backends): the FACS reasoner, a checkpoint in-process
# (transformers), a checkpoint behind an `emoreason serve` server (vLLM).
BACKENDS = ("rules", "hf", "vllm")

# FACS intensity: 0 = absent, 1..5 = A..E.
AU_INTENSITY_MAX = 5.0
AU_ACTIVE_THRESHOLD = 1.0  # intensity at or above which an AU counts as present (FACS "A")
INTENSITY_LETTERS = ("A", "B", "C", "D", "E")

# Chain-of-thought answer format, rendered and parsed by `emoreason.answer`.
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# Media placeholders in prompts (expanded by the model's processor).
FACE_TOKEN = "<face>"
AUDIO_TOKEN = "<audio>"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# what a folder walk picks up as video (any file can still be named directly; the decoder decides)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")

# what a checkpoint tells vLLM: the model class (config.json "architectures") and the video loader
# (video_preprocessor_config.json "video_processor_type"); see emoreason.serving
ARCHITECTURE = "EmoReasonForConditionalGeneration"
VIDEO_PROCESSOR_TYPE = "EmoReasonFaceCrops"
VIDEO_PREPROCESSOR_FILE = "video_preprocessor_config.json"
