using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// A per-thread array for a call with more labels than <see cref="LabelBuffer"/> holds, so such calls
/// allocate nothing either; the caller clears what it used, so the array keeps no label strings alive.
/// </summary>
internal static class LabelScratch
{
    private const int MinLength = 64;

    // Thread statics take the t_ prefix (dotnet/runtime style), which .editorconfig cannot tell apart from s_.
#pragma warning disable IDE1006
    [ThreadStatic]
    private static Label[]? t_labels;
#pragma warning restore IDE1006

    /// <summary>Room for <paramref name="count"/> labels, for the calling thread until its next call.</summary>
    public static Span<Label> Rent(int count)
    {
        Label[]? labels = t_labels;
        if (labels is null || labels.Length < count)
        {
            t_labels = labels = new Label[Math.Max(count, MinLength)];
        }

        return labels.AsSpan(0, count);
    }
}
