namespace Monitoring.Stream.Hosting.Queries;

/// <summary>How much window time and how many window aggregates the in-memory index keeps.</summary>
public sealed class RecentWindowIndexOptions
{
    /// <summary>Window time kept in memory, measured back from the newest window end (default 15 min); older windows are read from the Arrow store.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Most window aggregates held at once, over all series (default 250,000, about 335 MB at 1.34 KB each as measured in docs/sdk.md); the oldest go first.</summary>
    public int MaxAggregates { get; set; } = 250_000;
}
