namespace Monitoring.Stream.Server.Api;

/// <summary>The answer of <c>GET /api/v1/statistics</c>.</summary>
/// <param name="Metric">The metric asked for.</param>
/// <param name="From">Start of the span asked for.</param>
/// <param name="To">End of the span asked for (now).</param>
/// <param name="WindowSeconds">The span's length.</param>
/// <param name="Labels">The label filter: series whose labels include all of these were merged.</param>
/// <param name="GroupBy">The labels grouped by (empty: one answer).</param>
/// <param name="Statistics">Without group-by: the merged statistics, or null when no window of a matching series lies in the span.</param>
/// <param name="Groups">With group-by: one entry per combination of the group-by labels that has data.</param>
/// <param name="Series">With <c>step</c>: the span cut into buckets, oldest first; null without it.</param>
internal sealed record StatisticsResponse(string Metric, DateTimeOffset From, DateTimeOffset To, double WindowSeconds,
    IReadOnlyDictionary<string, string> Labels, IReadOnlyList<string> GroupBy, StatisticsData? Statistics, IReadOnlyList<GroupData> Groups,
    IReadOnlyList<BucketData>? Series = null);
