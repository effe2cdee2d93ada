namespace Monitoring.Stream.Sinks;

/// <summary>Queueing and retry of one sink.</summary>
public sealed class SinkOptions
{
    /// <summary>Window batches waiting for the sink before shards wait for it (default 64).</summary>
    public int QueueCapacity { get; set; } = 64;

    /// <summary>Attempts per batch before it is given up and counted as failed (default 5).</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>Delay before the first retry; doubles each time (default 100 ms).</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest delay between retries (default 10 s).</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(10);
}
