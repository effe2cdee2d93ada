namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>One request the stub received: its attempt number (from 1), headers, and, once read whole, its samples.</summary>
internal sealed record StubRequest(int Attempt, IReadOnlyDictionary<string, string> Headers, int ContentLength, DateTime ReceivedUtc)
{
    public List<DecodedSample>? Samples { get; set; }

    public int Status { get; set; }
}
