using System.Buffers;

namespace Monitoring.Stream.Model;

/// <summary>The naming rules of the Prometheus data model, which every sink downstream accepts.</summary>
public static class PrometheusNames
{
    private static readonly SearchValues<char> s_metricChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");

    private static readonly SearchValues<char> s_labelChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");

    /// <summary>Whether <paramref name="name"/> matches <c>[a-zA-Z_:][a-zA-Z0-9_:]*</c>.</summary>
    public static bool IsValidMetricName(ReadOnlySpan<char> name) =>
        name.Length > 0 && !char.IsAsciiDigit(name[0]) && !name.ContainsAnyExcept(s_metricChars);

    /// <summary>Whether <paramref name="name"/> matches <c>[a-zA-Z_][a-zA-Z0-9_]*</c> and does not start with the reserved <c>__</c>.</summary>
    public static bool IsValidLabelName(ReadOnlySpan<char> name) =>
        name.Length > 0 && !char.IsAsciiDigit(name[0]) && !name.StartsWith("__") && !name.ContainsAnyExcept(s_labelChars);
}
