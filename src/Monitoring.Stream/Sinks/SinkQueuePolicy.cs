namespace Monitoring.Stream.Sinks;

/// <summary>What the pipeline does with a closed window when a sink's queue is full.</summary>
public enum SinkQueuePolicy
{
    /// <summary>The shard that closed the window waits for room: nothing is lost, a stuck sink holds ingestion back (default).</summary>
    Block = 0,

    /// <summary>The oldest queued window is dropped for this sink (and counted): ingestion and the other sinks never wait for it.</summary>
    DropOldest = 1,
}
