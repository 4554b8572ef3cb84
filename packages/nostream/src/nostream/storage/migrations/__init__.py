"""SQL migrations of the storage backends, one folder per backend."""
