namespace Monitoring.Stream.Ingest;

/// <summary>What a producer does when a shard's channel is full.</summary>
public enum BackpressureMode
{
    /// <summary>Block the producing thread until the shard has room: nothing is dropped.</summary>
    Wait,

    /// <summary>Never block: drop the batch that does not fit, and count its points as dropped.</summary>
    DropNewest,
}
