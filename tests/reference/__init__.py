"""Reference implementations written from papers in plain PyTorch, used as oracles by the tests (no harness
import)."""
