"""Running trained models: freezing, the serving SavedModel, the runtimes that load each
model kind, predict/embed/Beam, and what a saved file holds (`inspect`)."""
