namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>What the stub does with one request it has read: answer with a status (and headers), or never answer.</summary>
internal sealed record StubResponse(int Status, IReadOnlyDictionary<string, string>? Headers = null, string Body = "")
{
    public static StubResponse NoContent { get; } = new(204);

    /// <summary>Reads the request and then never answers; the connection stays open until the stub stops.</summary>
    public static StubResponse NeverAnswer { get; } = new(-1);
}
