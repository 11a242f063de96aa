"""PRBoost: prompt-based rule discovery and boosting (see DESIGN.md, section PRBoost).

Rules (``rules``), the matching engine (``matching``), label models (``label_models``) and rule
statistics (``analysis``) are plain functions and small objects over numpy/scipy arrays.
"""
