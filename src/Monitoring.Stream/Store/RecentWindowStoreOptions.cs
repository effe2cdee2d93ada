namespace Monitoring.Stream.Store;

/// <summary>How much the recent-window store keeps, and its clock.</summary>
public sealed class RecentWindowStoreOptions
{
    /// <summary>Window time kept, measured back from the newest window end received (default 15 min).</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Window aggregates held at most; the oldest go first (default 2,000,000).</summary>
    public int MaxEntries { get; set; } = 2_000_000;

    /// <summary>The clock that queries measure their look-back from (default the system clock; a pipeline passes its own).</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Checks every setting and throws <see cref="ArgumentException"/> (or a subclass) naming the first that is out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Retention, TimeSpan.Zero, nameof(Retention));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxEntries, 1, nameof(MaxEntries));
        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }
}
