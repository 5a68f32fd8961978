"""Config: composing the Hydra tree from Python, the typed checks every section uses, and the Hydra
callbacks that check the output folders before any job starts."""
