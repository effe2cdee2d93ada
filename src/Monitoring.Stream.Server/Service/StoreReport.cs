using Monitoring.Stream.Store;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// What the local Arrow store found and failed at, for an operator of <c>run</c>: the files it recovered or set aside when
/// it opened (printed at start-up) and its failure counters (in <c>/metrics</c>), which docs/operations.md says to watch.
/// </summary>
internal static class StoreReport
{
    /// <summary>Lines for the start-up block: partial files recovered, damaged files set aside (each with its reason), errors met.</summary>
    public static IEnumerable<string> StartupLines(ArrowFileStore store)
    {
        if (store.PartialFilesRemoved > 0)
        {
            yield return $"  store: {store.PartialFilesRemoved} partial file(s) left by an earlier run: {store.PartialFilesRecovered} recovered ({store.BatchesRecovered} batches), {store.PendingRecoveries} waiting";
        }

        IReadOnlyList<SetAsideFile> aside = store.SetAsideFiles;
        if (aside.Count > 0)
        {
            yield return $"  store: {aside.Count} damaged file(s) set aside, never read as data (inspect and delete them by hand):";
            foreach (SetAsideFile file in aside)
            {
                yield return $"    {file.OriginalPath} -> {file.Path}: {file.Reason}";
            }
        }

        if (store.WriteErrors > 0)
        {
            yield return $"  store: {store.WriteErrors} error(s) while opening; last: {store.LastError}";
        }
    }

    /// <summary>Writes the store's counters in the Prometheus text format.</summary>
    public static void WriteTo(TextWriter w, ArrowFileStore store)
    {
        PrometheusText.Family(w, "monitoring_stream_store_files_set_aside", "gauge", "Damaged files the local Arrow store moved into damaged/ when it opened.");
        PrometheusText.Sample(w, "monitoring_stream_store_files_set_aside", [], store.FilesSetAside);
        PrometheusText.Family(w, "monitoring_stream_store_partial_files_recovered_total", "counter", "Partial files of an earlier run or a failed write published by recovery.");
        PrometheusText.Sample(w, "monitoring_stream_store_partial_files_recovered_total", [], store.PartialFilesRecovered);
        PrometheusText.Family(w, "monitoring_stream_store_pending_recoveries", "gauge", "Closed partial files whose acknowledged batches still wait to be published.");
        PrometheusText.Sample(w, "monitoring_stream_store_pending_recoveries", [], store.PendingRecoveries);
        PrometheusText.Family(w, "monitoring_stream_store_write_errors_total", "counter", "Failed writes, publications, recoveries and retention passes of the local Arrow store.");
        PrometheusText.Sample(w, "monitoring_stream_store_write_errors_total", [], store.WriteErrors);
        PrometheusText.Family(w, "monitoring_stream_store_disk_full_errors_total", "counter", "Those failures caused by a full disk or quota.");
        PrometheusText.Sample(w, "monitoring_stream_store_disk_full_errors_total", [], store.DiskFullErrors);
    }
}
