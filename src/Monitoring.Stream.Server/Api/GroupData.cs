namespace Monitoring.Stream.Server.Api;

/// <summary>The statistics of one group of a grouped query.</summary>
/// <param name="Labels">The group's values of the group-by labels (a series without one of them has no entry for it).</param>
/// <param name="Statistics">The group's merged statistics.</param>
internal sealed record GroupData(IReadOnlyDictionary<string, string> Labels, StatisticsData Statistics);
