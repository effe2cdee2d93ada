using Monitoring.Stream.Hosting.Queries;

namespace Monitoring.Stream.Server.Api;

/// <summary>Statistics of a metric over a span, as the HTTP API answers them; a figure that is undefined is null.</summary>
/// <param name="Count">Values merged.</param>
/// <param name="Sum">Sum of the values.</param>
/// <param name="Min">Smallest value.</param>
/// <param name="Max">Largest value.</param>
/// <param name="Mean">Arithmetic mean.</param>
/// <param name="Variance">Population variance (m2 / count).</param>
/// <param name="StdDev">Population standard deviation.</param>
/// <param name="SampleVariance">Sample variance (m2 / (count - 1)).</param>
/// <param name="SampleStdDev">Sample standard deviation.</param>
/// <param name="Last">Value of the latest window's last point.</param>
/// <param name="P50">Median, within the sketch's relative accuracy.</param>
/// <param name="P90">90th percentile.</param>
/// <param name="P95">95th percentile.</param>
/// <param name="P99">99th percentile.</param>
/// <param name="Series">Series merged.</param>
/// <param name="Windows">Window aggregates merged.</param>
/// <param name="FirstWindowStart">Start of the earliest window merged.</param>
/// <param name="LastWindowEnd">End of the latest window merged.</param>
internal sealed record StatisticsData(long Count, double? Sum, double? Min, double? Max, double? Mean, double? Variance, double? StdDev,
    double? SampleVariance, double? SampleStdDev, double? Last, double? P50, double? P90, double? P95, double? P99,
    int Series, int Windows, DateTimeOffset FirstWindowStart, DateTimeOffset LastWindowEnd)
{
    /// <summary>Converts merged statistics.</summary>
    public static StatisticsData From(MetricStatistics s) => new(s.Count, N(s.Sum), N(s.Min), N(s.Max), N(s.Mean), N(s.PopulationVariance), N(s.PopulationStdDev),
        N(s.SampleVariance), N(s.SampleStdDev), N(s.Last), N(s.Median), N(s.P90), N(s.P95), N(s.P99), s.Series, s.Windows,
        DateTimeOffset.FromUnixTimeMilliseconds(s.FromUnixMs), DateTimeOffset.FromUnixTimeMilliseconds(s.ToUnixMs));

    private static double? N(double v) => double.IsFinite(v) ? v : null;
}
