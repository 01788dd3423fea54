"""Pure rules: envelope (TA1), syntax and 005010X220A1 (pyx12), and the TA1/999 builders."""
