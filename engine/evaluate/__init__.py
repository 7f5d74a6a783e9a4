"""One record → result and decision record: patient validation, three-valued logic, durable-rules decision."""
