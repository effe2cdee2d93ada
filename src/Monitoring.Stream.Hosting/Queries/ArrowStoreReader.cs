using System.Collections.Concurrent;
using System.Text;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Model;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>
/// Reads window aggregates back from the published files of an <see cref="ArrowFileStore"/> folder.
/// Published files never change, so what each file spans (window times, metrics) is remembered after
/// the first read and files outside a query are not opened again.
/// </summary>
internal sealed class ArrowStoreReader
{
    private readonly string _directory;
    private readonly Func<string, bool>? _openedHere;
    private readonly ConcurrentDictionary<string, FileSummary> _summaries = new(StringComparer.Ordinal);
    private long _unreadable;

    /// <param name="directory">The store's folder.</param>
    /// <param name="openedHere">Whether a file holds windows of the engine whose recent windows the query also reads from
    /// memory (<see cref="ArrowFileStore.OpenedHere"/>); null: every file is another run's.</param>
    public ArrowStoreReader(string directory, Func<string, bool>? openedHere = null)
    {
        _directory = directory;
        _openedHere = openedHere;
    }

    private sealed record FileSummary(long Length, long MinStart, long MinEnd, long MaxEnd, HashSet<string> Metrics);

    /// <summary>Files that could not be read (deleted by retention in between, or damaged).</summary>
    public long UnreadableFiles => Interlocked.Read(ref _unreadable);

    /// <summary>
    /// Merges every stored aggregate of the metric whose window overlaps [from, to) into the accumulator
    /// <paramref name="route"/> gives its series (none: no match): from the files of other runs, all of them; from the
    /// files this engine wrote, those ending at or before <paramref name="ownMaxEndUnixMs"/> (later ones are in memory).
    /// </summary>
    public void Collect(string metric, Func<LabelSet, StatisticsAccumulator?> route, long fromUnixMs, long toUnixMs, long ownMaxEndUnixMs)
    {
        if (!Directory.Exists(_directory))
        {
            return;
        }

        byte[] metricUtf8 = Encoding.UTF8.GetBytes(metric);
        // PERF: a series has a row in every window of a file; its label set is decoded once per query.
        var labelSets = new Dictionary<byte[], LabelSet>(LabelBytesComparer.Instance);
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFiles(_directory, "*" + ArrowFileStore.Extension).Order(StringComparer.Ordinal))
        {
            present.Add(path);
            long maxEndUnixMs = _openedHere is not null && _openedHere(path) ? ownMaxEndUnixMs : long.MaxValue;
            if (_summaries.TryGetValue(path, out FileSummary? summary)
                && (summary.MaxEnd <= fromUnixMs || summary.MinStart >= toUnixMs || summary.MinEnd > maxEndUnixMs || !summary.Metrics.Contains(metric)))
            {
                continue;
            }

            try
            {
                ReadFile(path, summary is null, metric, metricUtf8, route, fromUnixMs, toUnixMs, maxEndUnixMs, labelSets);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or FormatException or UnauthorizedAccessException or ArgumentException or InvalidCastException)
            {
                Interlocked.Increment(ref _unreadable);
            }
        }

        foreach (string gone in _summaries.Keys.Where(k => !present.Contains(k)))
        {
            _summaries.TryRemove(gone, out _);
        }
    }

    private void ReadFile(string path, bool summarise, string metric, byte[] metricUtf8, Func<LabelSet, StatisticsAccumulator?> route, long from, long to, long maxEnd, Dictionary<byte[], LabelSet> labelSets)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
        using var reader = new ArrowFileReader(stream);
        long minStart = long.MaxValue, minEnd = long.MaxValue, maxEndSeen = long.MinValue;
        HashSet<string>? metrics = summarise ? new HashSet<string>(StringComparer.Ordinal) : null;
        byte[] previousMetric = [];
        byte[] signature = new byte[256];
        Dictionary<byte[], LabelSet>.AlternateLookup<ReadOnlySpan<byte>> bySignature = labelSets.GetAlternateLookup<ReadOnlySpan<byte>>();
        while (reader.ReadNextRecordBatch() is RecordBatch next)
        {
            using RecordBatch batch = next;
            var rows = new WindowRows(batch);
            for (int r = 0; r < rows.Length; r++)
            {
                long start = rows.StartUnixMs(r);
                long end = rows.EndUnixMs(r);
                if (metrics is not null)
                {
                    minStart = Math.Min(minStart, start);
                    minEnd = Math.Min(minEnd, end);
                    maxEndSeen = Math.Max(maxEndSeen, end);
                    // Rows of one metric tend to follow each other: only a change of name costs a string.
                    if (metrics.Count == 0 || !rows.MetricEquals(r, previousMetric))
                    {
                        string name = rows.Metric(r);
                        metrics.Add(name);
                        previousMetric = Encoding.UTF8.GetBytes(name);
                    }
                }

                if (end <= from || start >= to || end > maxEnd || !rows.MetricEquals(r, metricUtf8))
                {
                    continue;
                }

                ReadOnlySpan<byte> key = signature.AsSpan(0, rows.WriteLabelSignature(r, ref signature));
                if (!bySignature.TryGetValue(key, out LabelSet? labels))
                {
                    labels = rows.Labels(r);
                    bySignature[key] = labels;
                }

                route(labels)?.Add(labels, start, end, rows.Moments(r), rows.SketchBytes(r));
            }
        }

        if (metrics is not null)
        {
            _summaries[path] = new FileSummary(stream.Length, minStart, minEnd, maxEndSeen, metrics);
        }
    }
}
