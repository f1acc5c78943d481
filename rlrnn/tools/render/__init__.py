"""Episodes played to a window, an MP4 or a GIF, with an overlay of what the agent knows."""
