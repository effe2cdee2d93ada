namespace Monitoring.Stream.Sinks;

/// <summary>Queueing, timeout and retry of one sink.</summary>
public sealed class SinkOptions
{
    /// <summary>Window batches waiting for the sink (default 64).</summary>
    public int QueueCapacity { get; set; } = 64;

    /// <summary>
    /// Bytes of window batches waiting for the sink, counted as their columns (default 256 MiB). The queue is
    /// full when it holds <see cref="QueueCapacity"/> batches or these bytes, whichever comes first, so what a
    /// slow sink's queue holds does not grow with the number of series; a batch larger than the whole
    /// capacity is still let into an empty queue.
    /// </summary>
    public long QueueCapacityBytes { get; set; } = 256L << 20;

    /// <summary>What happens when the queue is full (default <see cref="SinkQueuePolicy.Block"/>).</summary>
    public SinkQueuePolicy QueuePolicy { get; set; } = SinkQueuePolicy.Block;

    /// <summary>
    /// Longest one write may take (default 30 s). Past it the attempt counts as failed and is retried;
    /// the pipeline stops waiting for it, while the batch's memory stays valid until the write really returns.
    /// At most 1 day; <see cref="Timeout.InfiniteTimeSpan"/> waits for ever.
    /// </summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Attempts per batch before it is given up and counted as failed (default 5).</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>Delay before the first retry; doubles each time (default 100 ms).</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest delay between retries (default 10 s, at most 1 day).</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest finite <see cref="AttemptTimeout"/> and <see cref="MaxBackoff"/> (1 day).</summary>
    private static readonly TimeSpan s_maxTimeout = TimeSpan.FromDays(1);

    /// <summary>Checks the settings and returns an immutable copy.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public SinkOptions Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(QueueCapacity, 1, nameof(QueueCapacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(QueueCapacityBytes, 1, nameof(QueueCapacityBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAttempts, 1, nameof(MaxAttempts));
        if (!Enum.IsDefined(QueuePolicy))
        {
            throw new ArgumentOutOfRangeException(nameof(QueuePolicy), QueuePolicy, "Unknown queue policy.");
        }

        // Timers refuse a due time beyond about 49.7 days: a longer finite value would pass here and throw
        // inside the sink's runner on its first write or retry.
        if ((AttemptTimeout <= TimeSpan.Zero || AttemptTimeout > s_maxTimeout) && AttemptTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(AttemptTimeout), AttemptTimeout, "The attempt timeout must be positive and at most 1 day, or infinite.");
        }

        if (InitialBackoff < TimeSpan.Zero || MaxBackoff < InitialBackoff)
        {
            throw new ArgumentOutOfRangeException(nameof(InitialBackoff), InitialBackoff, "Backoffs must be non-negative and InitialBackoff at most MaxBackoff.");
        }

        if (MaxBackoff > s_maxTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBackoff), MaxBackoff, "The longest backoff must be at most 1 day.");
        }

        return new SinkOptions
        {
            QueueCapacity = QueueCapacity,
            QueueCapacityBytes = QueueCapacityBytes,
            QueuePolicy = QueuePolicy,
            AttemptTimeout = AttemptTimeout,
            MaxAttempts = MaxAttempts,
            InitialBackoff = InitialBackoff,
            MaxBackoff = MaxBackoff,
        };
    }
}
