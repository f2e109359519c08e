"""asr.v1.SpeechRecognition over gRPC."""
