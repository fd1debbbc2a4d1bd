"""Training code behind the rungs that change weights (sft): the stage decides *what* to train on
and how the result is evaluated; the modules here only train, trl-style (config / trainer / script).

sft_local.py   trl SFTTrainer (+ peft LoRA), also runnable as a script under `accelerate launch`
sft_openai.py  the OpenAI files + fine-tuning jobs API
"""
