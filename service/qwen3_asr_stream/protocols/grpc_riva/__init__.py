"""nvidia.riva.asr.RivaSpeechRecognition over gRPC, with the messages nvidia-riva-client ships."""
