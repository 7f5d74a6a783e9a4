"""The engine, one subpackage per stage of the data flow: load → check → compile → evaluate →
explain → (kb façade) → batch / audit / scenarios → report. Imports flow one way (see
tests/test_layering.py); nothing here imports click, prints or exits."""
