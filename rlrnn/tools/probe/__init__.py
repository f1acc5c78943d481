"""A linear probe: can the hidden state tell the velocities the env hides?"""
