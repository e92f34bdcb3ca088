// Core ML latency measurement used by the MobileISPBench XCTest.
//
// Steps: compile the .mlpackage/.mlmodel on the device (MLModel.compileModel), load it with the chosen
// compute units, build one MLMultiArray per model input (the model's own shape and data type, values
// uniform in [0, 1) like packed RAW), run `warmup` untimed and `runs` timed predictions, and report
// milliseconds per prediction as JSON (schema "mobileisp.ios_bench.result/1", read back by
// mobileisp/ios_bench/xcresult.py — change both sides together).

import CoreML
import Foundation

/// mobileisp's `--compute-units` names and the Core ML setting each one selects.
public enum ComputeUnitsName: String, CaseIterable {
    case all
    case cpu
    case cpuGPU = "cpu-gpu"
    case cpuNE = "cpu-ne"

    public var mlComputeUnits: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpu: return .cpuOnly
        case .cpuGPU: return .cpuAndGPU
        case .cpuNE: return .cpuAndNeuralEngine
        }
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case badSetting(String)
    case unsupportedInput(String)

    public var description: String {
        switch self {
        case .badSetting(let text): return "invalid benchmark setting \(text)"
        case .unsupportedInput(let text): return "unsupported model input: \(text)"
        }
    }
}

/// Benchmark settings from the environment. `xcodebuild test` forwards `TEST_RUNNER_MOBILEISP_X=v`
/// from its own environment to the test process as `MOBILEISP_X=v`.
public struct BenchConfig {
    /// File name of the model in the test bundle's Resources folder; nil means "the only one there".
    public var modelFile: String?
    public var computeUnits: ComputeUnitsName
    public var warmup: Int
    public var runs: Int
    /// Where to also write the JSON (useful on a Mac or simulator); default: the test's temporary folder.
    public var resultPath: String?

    public init(environment env: [String: String] = ProcessInfo.processInfo.environment) throws {
        modelFile = env["MOBILEISP_MODEL"].flatMap { $0.isEmpty ? nil : $0 }
        let units = env["MOBILEISP_COMPUTE_UNITS"] ?? "all"
        guard let parsed = ComputeUnitsName(rawValue: units) else {
            throw BenchError.badSetting("MOBILEISP_COMPUTE_UNITS=\(units)")
        }
        computeUnits = parsed
        warmup = try Self.count(env, "MOBILEISP_WARMUP", default: 5, minimum: 0)
        runs = try Self.count(env, "MOBILEISP_RUNS", default: 20, minimum: 1)
        resultPath = env["MOBILEISP_RESULT_PATH"]
    }

    static func count(_ env: [String: String], _ key: String, default value: Int, minimum: Int) throws -> Int {
        guard let text = env[key] else { return value }
        guard let number = Int(text), number >= minimum else { throw BenchError.badSetting("\(key)=\(text)") }
        return number
    }
}

/// One model input as recorded in the report.
public struct InputInfo: Codable {
    public let name: String
    public let shape: [Int]
    public let dtype: String
}

/// The JSON the test attaches to its result bundle.
public struct BenchReport: Codable {
    public var schema = "mobileisp.ios_bench.result/1"
    public var modelFile: String
    /// The model's user-defined metadata (mobileisp writes model name and precision there).
    public var metadata: [String: String]
    /// Hardware model identifier, e.g. "iPhone16,1".
    public var device: String
    public var osVersion: String
    public var computeUnits: String
    public var warmup: Int
    public var runs: Int
    public var compileMs: Double
    public var loadMs: Double
    public var warmupMs: [Double]
    public var runsMs: [Double]
    public var inputs: [InputInfo]
    public var outputs: [String]
    public var startedAt: String

    // Explicit keys: a key-encoding strategy would also rewrite the metadata dictionary's keys.
    enum CodingKeys: String, CodingKey {
        case schema, metadata, device, warmup, runs, inputs, outputs
        case modelFile = "model_file"
        case osVersion = "os_version"
        case computeUnits = "compute_units"
        case compileMs = "compile_ms"
        case loadMs = "load_ms"
        case warmupMs = "warmup_ms"
        case runsMs = "runs_ms"
        case startedAt = "started_at"
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

public enum Bench {
    /// Compile, load and time `modelURL` with the settings in `config`.
    public static func run(modelURL: URL, config: BenchConfig) async throws -> BenchReport {
        let startedAt = ISO8601DateFormatter().string(from: Date())
        var start = DispatchTime.now().uptimeNanoseconds
        let compiledURL = try await MLModel.compileModel(at: modelURL)
        let compileMs = Bench.milliseconds(since: start)
        defer { try? FileManager.default.removeItem(at: compiledURL) }

        let configuration = MLModelConfiguration()
        configuration.computeUnits = config.computeUnits.mlComputeUnits
        start = DispatchTime.now().uptimeNanoseconds
        let model = try MLModel(contentsOf: compiledURL, configuration: configuration)
        let loadMs = Bench.milliseconds(since: start)

        let (provider, inputs) = try makeInputs(for: model.modelDescription)
        let times = try timePredictions(model: model, inputs: provider, warmup: config.warmup, runs: config.runs)
        let metadata = model.modelDescription.metadata[MLModelMetadataKey.creatorDefinedKey] as? [String: String] ?? [:]
        return BenchReport(
            modelFile: modelURL.lastPathComponent, metadata: metadata, device: machineIdentifier(),
            osVersion: osVersion(), computeUnits: config.computeUnits.rawValue, warmup: config.warmup,
            runs: config.runs, compileMs: compileMs, loadMs: loadMs, warmupMs: times.warmup, runsMs: times.runs,
            inputs: inputs, outputs: model.modelDescription.outputDescriptionsByName.keys.sorted(),
            startedAt: startedAt
        )
    }

    /// Milliseconds on the monotonic clock since `start` (from `DispatchTime.now().uptimeNanoseconds`).
    static func milliseconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    /// `warmup` untimed then `runs` timed predictions; milliseconds per prediction.
    /// Synchronous on purpose: in an async context Swift would pick the async prediction overload (iOS 17+).
    public static func timePredictions(model: MLModel, inputs: MLFeatureProvider, warmup: Int, runs: Int) throws
        -> (warmup: [Double], runs: [Double])
    {
        func once() throws -> Double {
            try autoreleasepool {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try model.prediction(from: inputs)
                return Bench.milliseconds(since: start)
            }
        }
        let warm = try (0..<warmup).map { _ in try once() }
        let timed = try (0..<runs).map { _ in try once() }
        return (warm, timed)
    }

    /// One multi-array per model input, in the input's default shape and data type.
    static func makeInputs(for description: MLModelDescription) throws -> (MLFeatureProvider, [InputInfo]) {
        var features: [String: MLFeatureValue] = [:]
        var infos: [InputInfo] = []
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for name in description.inputDescriptionsByName.keys.sorted() {
            guard let feature = description.inputDescriptionsByName[name], feature.type == .multiArray,
                  let constraint = feature.multiArrayConstraint
            else {
                throw BenchError.unsupportedInput("\(name) is not a multi-array (mobileisp exports tensors only)")
            }
            let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
            fillUniform(array, state: &state)
            features[name] = MLFeatureValue(multiArray: array)
            infos.append(InputInfo(name: name, shape: constraint.shape.map { $0.intValue }, dtype: dtypeName(constraint.dataType)))
        }
        return (try MLDictionaryFeatureProvider(dictionary: features), infos)
    }

    /// Uniform [0, 1) values from a 64-bit LCG, so every run feeds the same data.
    static func fillUniform(_ array: MLMultiArray, state: inout UInt64) {
        func next() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) * 0x1p-53
        }
        if array.dataType == .float32 {
            // A freshly allocated multi-array is contiguous; the NSNumber path below would be ~50x slower.
            let pointer = array.dataPointer.bindMemory(to: Float.self, capacity: array.count)
            for i in 0..<array.count { pointer[i] = Float(next()) }
        } else {
            for i in 0..<array.count { array[i] = NSNumber(value: next()) }
        }
    }

    static func dtypeName(_ type: MLMultiArrayDataType) -> String {
        switch type {
        case .float32: return "float32"
        case .float16: return "float16"
        case .double: return "float64"
        case .int32: return "int32"
        default: return "other(\(type.rawValue))"
        }
    }

    /// Hardware model identifier ("iPhone16,1"); the simulated model on a simulator.
    public static func machineIdentifier() -> String {
        if let simulated = ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] { return simulated }
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// "17.5.1" (or "17.5" when the patch level is 0).
    public static func osVersion() -> String {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return v.patchVersion == 0 ? "\(v.majorVersion).\(v.minorVersion)" : "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"
    }
}
