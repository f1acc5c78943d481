"""What compare and tune share: study storages and statistics over seeds and runs."""
