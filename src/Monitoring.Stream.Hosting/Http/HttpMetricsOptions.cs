namespace Monitoring.Stream.Hosting.Http;

/// <summary>Settings of the HTTP request metrics.</summary>
public sealed class HttpMetricsOptions
{
    /// <summary>
    /// Whether the raw request path becomes a <c>path</c> label (default false). Off by default: a path
    /// carries user ids and document ids, so every distinct value would be a new series and the
    /// series count (and memory) would grow with traffic. Turn on only for apps with a small, fixed set of paths.
    /// </summary>
    public bool IncludeRawPath { get; set; }

    /// <summary>The <c>route</c> label of a request that matched no endpoint (default <c>unmatched</c>).</summary>
    public string UnmatchedRoute { get; set; } = "unmatched";
}
