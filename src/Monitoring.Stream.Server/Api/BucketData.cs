namespace Monitoring.Stream.Server.Api;

/// <summary>One time bucket of a statistics query asked with <c>step</c>.</summary>
/// <param name="From">The bucket's start (a multiple of the step since the epoch).</param>
/// <param name="To">The bucket's end.</param>
/// <param name="Statistics">The windows overlapping the bucket, merged; null when none.</param>
internal sealed record BucketData(DateTimeOffset From, DateTimeOffset To, StatisticsData? Statistics);
