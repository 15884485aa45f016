"""Application services (spec: Application Service API): registrations, delivery."""
