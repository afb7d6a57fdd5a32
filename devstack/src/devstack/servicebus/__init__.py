"""A local Azure Service Bus emulator that the official `azure-servicebus` SDK reaches over plain AMQP 1.0."""
