using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>Statistics of the series that share one combination of the group-by labels.</summary>
/// <param name="Group">The group-by labels and their values (a label a series lacks is left out).</param>
/// <param name="Statistics">The merged statistics of the group.</param>
public sealed record GroupedStatistics(LabelSet Group, MetricStatistics Statistics);
