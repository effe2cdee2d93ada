namespace Monitoring.Stream.Hosting.Health;

/// <summary>Thresholds of the engine's own health check; every one has a default an operator rarely needs to change.</summary>
public sealed class EngineHealthOptions
{
    /// <summary>Fullest shard queue, as a fraction of its capacity, from which the engine is degraded (default 0.5).</summary>
    public double ShardQueueFillDegraded { get; set; } = 0.5;

    /// <summary>Fullest shard queue fraction from which the engine is unhealthy (default 0.9).</summary>
    public double ShardQueueFillUnhealthy { get; set; } = 0.9;

    /// <summary>Fraction of offered points dropped over the trailing rate window from which the engine is degraded (default 0.001).</summary>
    public double DropRateDegraded { get; set; } = 0.001;

    /// <summary>Fraction of offered points dropped over the trailing rate window from which the engine is unhealthy (default 0.05).</summary>
    public double DropRateUnhealthy { get; set; } = 0.05;

    /// <summary>Fraction of accepted points late over the trailing rate window from which the engine is degraded (default 0.01).</summary>
    public double LateRateDegraded { get; set; } = 0.01;

    /// <summary>Fraction of accepted points late over the trailing rate window from which the engine is unhealthy (default 0.1).</summary>
    public double LateRateUnhealthy { get; set; } = 0.1;

    /// <summary>
    /// The span the drop and late rates, and a sink's lost windows, are taken over (default 1 min): every check compares
    /// the counters with a snapshot one to two rate windows old, whoever made the checks in between (when checks come
    /// less often than that, with the previous check's; in the first rate window, with the counters as the check started).
    /// </summary>
    public TimeSpan RateWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>A sink with windows waiting and no progress for this long is stalled: degraded (default 30 s).</summary>
    public TimeSpan SinkStalledDegradedAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A sink with windows waiting and no progress for this long is unhealthy (default 2 min).</summary>
    public TimeSpan SinkStalledUnhealthyAfter { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Throws with the name of the first setting out of range.</summary>
    internal void Validate()
    {
        static void Fraction(double degraded, double unhealthy, string name)
        {
            if (!(degraded is >= 0 and <= 1) || !(unhealthy is >= 0 and <= 1) || degraded > unhealthy)
            {
                throw new ArgumentOutOfRangeException(name, $"Health thresholds {name}Degraded ({degraded}) and {name}Unhealthy ({unhealthy}) must be fractions in [0, 1], degraded <= unhealthy.");
            }
        }

        Fraction(ShardQueueFillDegraded, ShardQueueFillUnhealthy, "ShardQueueFill");
        Fraction(DropRateDegraded, DropRateUnhealthy, "DropRate");
        Fraction(LateRateDegraded, LateRateUnhealthy, "LateRate");
        if (RateWindow <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RateWindow), $"RateWindow ({RateWindow}) must be positive.");
        }

        if (SinkStalledDegradedAfter <= TimeSpan.Zero || SinkStalledUnhealthyAfter < SinkStalledDegradedAfter)
        {
            throw new ArgumentOutOfRangeException(nameof(SinkStalledDegradedAfter),
                $"SinkStalledDegradedAfter ({SinkStalledDegradedAfter}) must be positive and at most SinkStalledUnhealthyAfter ({SinkStalledUnhealthyAfter}).");
        }
    }
}
