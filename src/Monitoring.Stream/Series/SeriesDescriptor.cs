using System.Runtime.CompilerServices;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Series;

/// <summary>What a <see cref="SeriesId"/> stands for: the metric, its canonical labels, and whether it is an overflow series.</summary>
public sealed class SeriesDescriptor
{
    private readonly Label[] _labels;
    private bool _unlisted;

    internal SeriesDescriptor(SeriesId id, string metric, Label[] canonicalLabels, bool isOverflow, int hashCode)
    {
        Id = id;
        Metric = metric;
        _labels = canonicalLabels;
        Labels = LabelSet.FromCanonical(canonicalLabels);
        IsOverflow = isOverflow;
        HashCode = hashCode;
    }

    /// <summary>The dense identifier.</summary>
    public SeriesId Id { get; }

    /// <summary>The metric name.</summary>
    public string Metric { get; }

    /// <summary>The canonical labels.</summary>
    public LabelSet Labels { get; }

    /// <summary>Whether this series collects the points of label sets beyond the metric's cardinality limit.</summary>
    public bool IsOverflow { get; }

    internal int HashCode { get; }

    /// <summary>Its slot in the registry's identity index, or -1; changed only under the registry's lock.</summary>
    internal int IdentitySlot { get; set; } = -1;

    /// <summary>The identity index's count of freed slots when this series last found no room.</summary>
    internal int IdentityFreesSeen { get; set; }

    /// <summary>Set once the series is reclaimed: its labels no longer resolve to this descriptor.</summary>
    internal bool IsUnlisted
    {
        get => Volatile.Read(ref _unlisted);
        set => Volatile.Write(ref _unlisted, value);
    }

    /// <summary>The canonical labels as stored, for the registry's table.</summary>
    internal Label[] CanonicalLabels => _labels;

    /// <summary>
    /// Whether a stored key (<paramref name="storedMetric"/>, <paramref name="stored"/>) is the series of
    /// <paramref name="metric"/> with <c>labels</c>: taken in <paramref name="order"/> when one is given,
    /// else in any order, empty values ignored.
    /// </summary>
    /// <remarks>PERF: strings are usually the very instances the series was created from, so
    /// string.Equals returns on the reference check without reading the characters.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Matches(string storedMetric, Label[] stored, string metric, ReadOnlySpan<Label> labels, ReadOnlySpan<byte> order)
    {
        if (!string.Equals(metric, storedMetric))
        {
            return false;
        }

        if (!order.IsEmpty)
        {
            if (stored.Length != order.Length)
            {
                return false;
            }

            for (int i = 0; i < stored.Length; i++)
            {
                ref readonly Label given = ref labels[order[i]];
                if (!string.Equals(given.Name, stored[i].Name) || !string.Equals(given.Value, stored[i].Value))
                {
                    return false;
                }
            }

            return true;
        }

        if (stored.Length == labels.Length)
        {
            int i = 0;
            while (i < stored.Length && string.Equals(labels[i].Name, stored[i].Name) && string.Equals(labels[i].Value, stored[i].Value))
            {
                i++;
            }

            if (i == stored.Length)
            {
                return true;
            }
        }

        return MatchesInAnyOrder(labels, stored);
    }

    /// <summary>
    /// Matches labels given in another order than the canonical one, or with empty-valued labels
    /// among them: each non-empty label must pair with a distinct stored label of the same name and
    /// value, and every stored label must be paired. A repeated name fails, which leaves its
    /// rejection to the canonical path.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool MatchesInAnyOrder(ReadOnlySpan<Label> labels, Label[] stored)
    {
        if (stored.Length > 64)
        {
            return false;
        }

        ulong paired = 0;
        int kept = 0;
        foreach (ref readonly Label given in labels)
        {
            if (string.IsNullOrEmpty(given.Value))
            {
                continue;
            }

            kept++;
            int j = 0;
            while (j < stored.Length && !string.Equals(given.Name, stored[j].Name))
            {
                j++;
            }

            if (j == stored.Length || (paired & (1UL << j)) != 0 || !string.Equals(given.Value, stored[j].Value))
            {
                return false;
            }

            paired |= 1UL << j;
        }

        return kept == stored.Length;
    }

    /// <inheritdoc />
    public override string ToString() => Metric + Labels.ToString();
}
