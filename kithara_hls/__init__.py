"""kithara_hls: an HLS VOD stream as a seekable binary file."""
