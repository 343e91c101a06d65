import DDSPPiano
