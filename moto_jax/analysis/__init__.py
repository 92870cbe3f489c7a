"""Reading trained runs: checkpoint evaluation and open-loop prediction (the `launch/` tools' library)."""
