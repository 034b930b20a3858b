"""Data: sample avatars (synth), the relit dataset format (dataset), training samplers (sampling)."""
