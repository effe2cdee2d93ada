namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>One time series of a remote-write request with its single sample, as Google's protobuf reader decodes it.</summary>
internal sealed record DecodedSample(IReadOnlyList<KeyValuePair<string, string>> Labels, double Value, long TimestampMs)
{
    public string Name => Labels.First(l => l.Key == "__name__").Value;

    /// <summary>The series in Prometheus notation, labels in the order received.</summary>
    public string SeriesKey => Name + "{" + string.Join(",", Labels.Where(l => l.Key != "__name__").Select(l => $"{l.Key}=\"{l.Value}\"")) + "}";
}
