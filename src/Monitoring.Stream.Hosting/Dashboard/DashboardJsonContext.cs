using System.Text.Json.Serialization;

namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Source-generated JSON for <see cref="DashboardData"/>: camelCase names, nulls written, no reflection.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false)]
[JsonSerializable(typeof(DashboardData))]
public sealed partial class DashboardJsonContext : JsonSerializerContext;
