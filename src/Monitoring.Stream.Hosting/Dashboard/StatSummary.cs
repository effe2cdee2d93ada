using Monitoring.Stream.Hosting.Queries;

namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Statistics of one metric over the dashboard window; a figure that is undefined (e.g. the sample std-dev of one value) is null.</summary>
/// <param name="Count">Values merged.</param>
/// <param name="Min">Smallest value.</param>
/// <param name="Max">Largest value.</param>
/// <param name="Mean">Arithmetic mean.</param>
/// <param name="Median">Median, within the sketch's relative accuracy.</param>
/// <param name="P90">90th percentile.</param>
/// <param name="P95">95th percentile.</param>
/// <param name="P99">99th percentile.</param>
/// <param name="StdDevPopulation">Population standard deviation.</param>
/// <param name="StdDevSample">Sample standard deviation.</param>
/// <param name="Last">The latest value (for a gauge: its current level).</param>
public sealed record StatSummary(long Count, double? Min, double? Max, double? Mean, double? Median, double? P90, double? P95, double? P99,
    double? StdDevPopulation, double? StdDevSample, double? Last)
{
    /// <summary>Summarises merged statistics, or returns null when there are none.</summary>
    public static StatSummary? From(MetricStatistics? s) => s is null ? null : new StatSummary(s.Count, N(s.Min), N(s.Max), N(s.Mean),
        N(s.Median), N(s.P90), N(s.P95), N(s.P99), N(s.PopulationStdDev), N(s.SampleStdDev), N(s.Last));

    private static double? N(double v) => double.IsFinite(v) ? v : null;
}
